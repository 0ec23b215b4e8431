//! Wires membership → slots → HAProxy; lifecycle and signals.
