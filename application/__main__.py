"""`python -m imageledger`: the command line, as the `imageledger` script runs it."""

from imageledger.cli import main

if __name__ == "__main__":
    main()
