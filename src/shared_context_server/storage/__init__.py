"""Storage: the seam the domain uses, the opener that picks an engine, and the engines."""
