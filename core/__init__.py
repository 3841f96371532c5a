"""The foundations every layer stands on: typed records that travel between the stages
(``records``), the one typed configuration (``config``), the one-line errors users see
(``errors``), file writing and hashing (``files``), the progress callback type (``progress``)
and the process-wide cache of loaded models (``models``). Plain code: it imports nothing else
of mmpipe and importing it only defines things.
"""

# Part of every feature key (pipeline.extract): raised whenever the same video and settings give
# different numbers, so files and caches made by an earlier version are not taken for this one.
__version__ = "0.1.1"
