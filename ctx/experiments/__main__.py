from ctx.experiments.cli import main

main()
