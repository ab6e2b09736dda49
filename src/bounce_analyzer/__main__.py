from bounce_analyzer.cli import main

main()
