"""The experiment runner: the studies that compare Contextrast's variants, and their CLI
(`python -m ctx.experiments {ablation,tune,reference,report,regimes,diagnose,gallery,mechanisms,
error-kinds} ...`, see `cli`).

- `variants`: the variants the studies compare (TrainConfig overrides), the frozen test evaluation
- `ablation`, `recorder`, `ablation_report`: variants x seeds on the default scenes (at the
  setting given: results/ablation.json used α 0.02 with a 3,000-step warm-up,
  results/defaults/ METHOD.md's), the anchor snapshots of every run, results/ablation.md and .png
- `tuning`: PA settings scored on the validation scenes only (results/tuning.json)
- `regimes`, `regime_study`, `regime_report`, `regime_progress`: named digit-scene settings, the
  pre-registered study across them (results/regimes.json, regimes.md, regimes.png), and how far
  it is (`regimes --status`)
- `regime_reference`, `gallery`: the reference runs and the per-regime gallery (data/regimes/)
  rebuilt from the study's runs
- `diagnosis`: what the PA term changes and what BANE has to act on, per stage
- `mechanisms`: the same numbers for each regime's shipped runs
- `error_kinds`: what the wrong pixels are, and Contextrast − CE per kind over the test pairs
- `stats`: the statistics both reports use (mean ± std, differences paired by seed, t-intervals)

The notebooks load the reference runs with `ctx.reference` and reach this package through
`ctx.lessons` (`training` reads `ablation_report` and `stats`; `regimes` reads `diagnosis`,
`gallery`, `regime_study`, `regimes`, `mechanisms` and `error_kinds`); notebook 07 trains
nothing.
"""
