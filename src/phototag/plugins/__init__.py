"""Builtin plugins. Each is registered exactly like an external one (see ``phototag.manager``)."""
