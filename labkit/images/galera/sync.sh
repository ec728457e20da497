#!/bin/sh
# labkit-galera's `sync` (first on PATH in the galera image): without arguments it flushes the
# file system of the member's data directory only (syncfs), not every file system of the machine.
#
# The rsync SST donor runs a bare `sync` after FLUSH TABLES (wsrep_sst_rsync). On a real VM that
# flushes the VM's own disk; on the embedded test bed every VM shares one kernel, so it flushed
# every VM's writes too and took 8-15 s beside an image import. What the SST needs is the data
# directory on stable storage, which `sync -f` on it gives. With arguments it is coreutils' sync.
if [ "$#" -eq 0 ]; then
    exec /usr/bin/sync -f "${GALERA_DATADIR:-/var/lib/mysql}"
fi
exec /usr/bin/sync "$@"
