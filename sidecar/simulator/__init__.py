"""A stand-in for the Lingma binary: same command line, same wire protocol, scripted answers."""
