-- Demo records of `base`, loaded only in databases created with --with-demo (Odoo 19).
INSERT INTO res_partner (name, email, phone, is_company, company_id) VALUES
    ('Azure Interior', 'azure.Interior24@example.com', '(870)-931-0505', true, 1),
    ('Deco Addict', 'deco_addict@example.com', '(603)-996-3829', true, 1),
    ('Gemini Furniture', 'gemini_furniture@example.com', '(941)-284-4875', true, 1),
    ('Marc Demo', 'mark.brown23@example.com', '(441)-695-2334', false, 1);

INSERT INTO res_users (login, password, partner_id, company_id)
SELECT 'demo', '$pbkdf2-sha512$600000$standin$standin', id, 1
  FROM res_partner WHERE name = 'Marc Demo';
