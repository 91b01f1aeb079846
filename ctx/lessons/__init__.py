"""Notebook helpers: one module per notebook topic, the widgets and figures a lesson shows.

- `base` (all notebooks): `setup()` (FAST, device, seeds, plot style) and `Explorer`, the one
  widget base every explorer below subclasses;
- `scenes` (00, 04): `SceneBrowser`, a scene beside its labels and each model's prediction;
- `training` (04, 05, 06): `LiveCurves` (CE term against CE term, α·PA apart, seconds per
  step), `train_live`, `show_ablation`, `load_ablation`, and the readings printed from the
  numbers (`reference_setting`, `scene_gain_text`, `ablation_reading`, `short_run_verdict`);
- `receptive_field` (01): `ReceptiveFieldExplorer`;
- `confusion` (01): `plot_confusion`, `ConfusionExplorer`;
- `pa` (02): the PA loss: `plot_points`, `TemperatureExplorer`, `FusionExplorer`,
  `plot_anchor_similarity`, own vs fused anchors on one sample (`fusion_effect`,
  `fusion_reading`), `anchor_agreement`;
- `bane` (03): BANE's negatives: `plot_bane_steps`, `plot_distance_histograms`, `BaneExplorer`,
  and the readings of its limits at coarse stages (`stages_reading`, `negatives_reading`);
- `anchors` (05): anchor evolution: similarity matrices, alignment (`alignment_reading`),
  trajectories from start to end, `AnchorExplorer`;
- `atlas` (06; its `separation_reading` also in 05): the embedding atlas: `plot_atlas`,
  `AtlasExplorer`, and the separation paradox (`separation_reading`: encoder features of both
  runs, not CE's untrained heads);
- `regimes` (07): where contrast helps, from the regime study: the diagnosis, the map of gain vs
  regime (`gain_map`, `plot_gain_map`), what each mechanism needs (`mechanism_rows`), the slide
  summary, and `RegimeCompare` (CE vs Contextrast predictions of a regime's shipped runs).

The numbers these show are computed apart from any widget, in `ctx.analysis` (scenes, receptive
fields, confusions, the PA loss, anchors), `ctx.bane_sets` (03) and `ctx.projection` (06); the
one figure style (`figure`, colours, images) and the figures several notebooks share
(`plot_scenes`, `plot_history`) are in `ctx.plotting`.
"""

try:
    import ipywidgets  # noqa: F401  (every widget module needs it: fail here with the fix)
except ImportError as e:  # the library installs without the notebook extras
    raise ImportError(
        "ctx.lessons needs the notebooks extra: pip install 'ctx-contextrast[notebooks]'"
    ) from e
