"""``phototag service``: install phototag as a systemd service, find the installed one, check its access.

- :mod:`.units` renders a unit (system or user) from a :class:`~.units.UnitSpec` and reads installed units
  (drop-ins included) back: ``ExecStart``, ``Environment``, specifiers.
- :mod:`.access` answers "can the service's user reach this interpreter, write this folder, and write the
  folders created in it later?" from stat results and POSIX ACLs (pure, so tests pass values).
- :mod:`.locate` finds an installed phototag unit and the state DB it uses, so ``phototag status`` run from a
  shell reads the service's database instead of the shell user's.
- :mod:`.program` is the phototag the unit runs (this one, with its venv) and whether the service's user can.
- :mod:`.install` plans and applies ``install`` and ``uninstall`` (only what install wrote is removed).
- :mod:`.doctor` gives ``phototag doctor`` its lines about the installed system service's folders.

The click commands live with the daemon's other commands in :mod:`phototag.daemon.commands`. Nothing here
imports the daemon: the service is described by its unit file, not by running code.
"""
