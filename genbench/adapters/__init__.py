"""Models of other libraries as genbench models: wrappers to its contract, and safe loaders of their files."""
