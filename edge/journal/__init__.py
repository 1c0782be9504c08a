"""The hash-chained journal of every committed sale, return, top-up and stock movement."""
