"""People: faces recognised across the library and named from the user's own metadata.

``store`` (the faces and people tables of the state DB), ``cluster`` (the incremental rule, pure), ``analyzer``
(the ``people`` library analyzer the pipeline runs after each batch), ``sheet`` (contact sheets). The commands
are in :mod:`phototag.plugins.people`.
"""
