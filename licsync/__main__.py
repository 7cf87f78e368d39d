from licsync.cli import main

main()
