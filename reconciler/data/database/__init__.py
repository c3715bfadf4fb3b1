"""Data of Odoo databases: endpoints, copies, neutralisation, masking, Odoo dump files."""
