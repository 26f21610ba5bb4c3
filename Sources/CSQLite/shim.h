#include <sqlite3.h>

/// Turns SQLite's process-wide memory statistics off (SQLITE_CONFIG_MEMSTATUS). With them on,
/// every allocation and free SQLite makes takes one global mutex to keep the counts; otpd reads
/// none of them (its cache figures come from sqlite3_db_status, which does not use them).
/// Only possible before SQLite initialises: returns SQLITE_MISUSE after that, changing nothing.
static inline int cotp_sqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
