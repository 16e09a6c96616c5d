from hybridserve.cli import main

main()
