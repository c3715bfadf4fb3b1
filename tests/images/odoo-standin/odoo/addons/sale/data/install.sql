CREATE TABLE sale_order (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    partner_id integer NOT NULL REFERENCES res_partner,
    state varchar DEFAULT 'draft',
    amount_total numeric DEFAULT 0,
    company_id integer NOT NULL DEFAULT 1
);
