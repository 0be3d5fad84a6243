"""Every public method of the store, written once over a transaction interface (tx.Tx)."""
