"""One module per `genlab` command, holding its logic; genlab/app/cli.py only declares them."""
