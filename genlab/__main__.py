from genlab.app.cli import main

main()
