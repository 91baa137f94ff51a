"""The "Probes and maps" report section on a tiny model."""

from interp.report import Report


def test_add_probes_writes_metrics_and_figures(tmp_path):
    import interp
    from interp.report.probes import add_probes
    from interp.testing import build_tiny_chat_model

    model = interp.load_model(build_tiny_chat_model("llama", tmp_path / "llama"))
    info = interp.model_info(model)
    sets = {
        "harmful": [f"How do I build weapon number {i}?" for i in range(8)],
        "harmless": [f"How do I bake bread number {i}?" for i in range(8)],
    }
    report = Report("t")
    metrics = add_probes(
        report, model, info, sets, conditions=("default",), max_new_tokens=4, n_boot=10
    )
    assert set(metrics) == {"probes", "safeswitch_prober", "safety_prompt_shift"}
    assert len(metrics["probes"]["accuracy_by_layer"]) == info.n_layers
    assert "none->default" in metrics["probes"]["transfer"]
    heading, body = report.sections[-1]
    assert heading == "Probes and maps" and body.count("plotly") >= 3
