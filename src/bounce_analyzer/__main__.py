from bounce_analyzer.cli import main

if __name__ == "__main__":  # (not when a process Dask spawns imports it: `ingest --workers`)
    main()
