{
    "name": "ACME Sales",
    "version": "19.0.1.0.0",
    "summary": "ACME's sales customisations",
    "depends": ["acme_base", "sale_management"],
    "data": [],
    "license": "LGPL-3",
    "installable": True,
}
