"""The foundations every layer stands on: typed records that travel between the stages
(``records``), the one typed configuration (``config``), the one-line errors users see
(``errors``), file writing and hashing (``files``), the progress callback type (``progress``)
and the process-wide cache of loaded models (``models``). Plain code: it imports nothing else
of mmpipe and importing it only defines things.
"""

__version__ = "0.1.0"
