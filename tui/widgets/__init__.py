"""The dashboard's widgets, one small module each."""
