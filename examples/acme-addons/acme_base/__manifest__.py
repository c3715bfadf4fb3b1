{
    "name": "ACME Base",
    "version": "19.0.1.0.0",
    "summary": "ACME's customer codes on partners",
    "depends": ["contacts"],
    "data": [],
    "license": "LGPL-3",
    "installable": True,
}
