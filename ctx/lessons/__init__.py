"""Notebook helpers: one module per notebook topic, the widgets and figures a lesson shows.

- `base` (all notebooks): `setup()` (FAST, device, seeds, plot style) and `Explorer`, the one
  widget base every explorer below subclasses;
- `scenes` (00, 04): `SceneBrowser`, a scene beside its labels and each model's prediction;
- `training` (00, 04): `LiveCurves` (`plot_history` redrawn while training), `train_live`,
  `show_ablation`;
- `receptive_field` (01): `ReceptiveFieldExplorer`;
- `confusion` (01): `plot_confusion`, `ConfusionExplorer`;
- `pa` (02): the PA loss: `plot_points`, `TemperatureExplorer`, `FusionExplorer`,
  `plot_anchor_similarity`;
- `bane` (03): BANE's negatives: `plot_bane_steps`, `plot_distance_histograms`, `BaneExplorer`;
- `anchors` (05): anchor evolution: similarity matrices, alignment, trajectories, `AnchorExplorer`;
- `atlas` (06): the embedding atlas: `plot_atlas`, `AtlasExplorer`;
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
