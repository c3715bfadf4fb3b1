CREATE TABLE iap_account (
    id serial PRIMARY KEY,
    name varchar,
    service_name varchar,
    account_token varchar,
    company_ids varchar
);
