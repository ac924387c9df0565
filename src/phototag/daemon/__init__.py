"""The watch daemon: ``phototag watch`` as a systemd service.

Data flows one way: :mod:`.watcher` (watchdog events) -> :mod:`.stability` (is the file complete?) ->
:mod:`.queue` (persistent, in the state DB) -> :mod:`.worker` (the pipeline) -> writers. :mod:`.service` runs
the loop, rescans (:mod:`.scan`) and talks to systemd (:mod:`.sdnotify`); :mod:`.commands` holds the CLI.
"""
