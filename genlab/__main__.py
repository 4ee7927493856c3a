from genlab.app.main import main

main()
