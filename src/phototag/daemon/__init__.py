"""The watch daemon: ``phototag watch`` as a systemd service.

Data flows one way: :mod:`.watcher` (watchdog events) -> :mod:`.intake` (which paths are photos, :mod:`.stability`:
is the file complete?) -> :mod:`.queue` (persistent, in the state DB) -> :mod:`.worker` (the pipeline) ->
writers. :mod:`.service` runs the main loop and talks to systemd (:mod:`.sdnotify`, :mod:`.status`); rescans walk
the roots (:mod:`.scan`) and apply a pure plan (:mod:`.reconcile`) against the state DB (:mod:`.records`);
:mod:`.lock` keeps to one daemon per state DB; :mod:`.commands` holds the CLI.
"""
