"""The EDPSN network: configuration, blocks, edge enhancement, entropy division, model."""
