"""The experiment runner: the studies that compare Contextrast's variants, and their CLI
(`python -m ctx.experiments {ablation,tune,reference,report,regimes,diagnose} ...`, see `cli`).

- `variants`: the variants the studies compare (TrainConfig overrides), the frozen test evaluation
- `ablation`, `recorder`, `ablation_report`: variants x seeds on the default setting, the anchor
  snapshots of every run, results/ablation.md and .png
- `tuning`: PA settings scored on the validation scenes only (results/tuning.json)
- `regimes`, `regime_study`, `regime_report`: named digit-scene settings and the pre-registered
  study across them (results/regimes.json, regimes.md, regimes.png)
- `diagnosis`: what the PA term changes and what BANE has to act on, per stage
- `stats`: the statistics both reports use (mean ± std, differences paired by seed, t-intervals)

Notebooks never import this package: the reference runs they read load with `ctx.reference`.
"""
