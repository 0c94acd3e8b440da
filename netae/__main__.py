from netae.cli import main

main()
