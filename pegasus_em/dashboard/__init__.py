"""The dashboard: pages over Pegasus's databases and the ensemble manager's."""
