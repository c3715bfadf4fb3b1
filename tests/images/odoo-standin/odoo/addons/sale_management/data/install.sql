CREATE TABLE sale_order_template (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    active boolean DEFAULT true
);
