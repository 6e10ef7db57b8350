from gardien.cli import main

main()
