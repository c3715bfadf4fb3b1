from odoo import fields, models


class ResPartner(models.Model):
    _inherit = "res.partner"

    acme_customer_code = fields.Char(string="ACME customer code", index=True)
