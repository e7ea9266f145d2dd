from localroute.cli.main import run

run()
