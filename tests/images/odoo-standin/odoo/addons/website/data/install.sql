CREATE TABLE website (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    domain varchar,
    company_id integer NOT NULL DEFAULT 1,
    robots_txt text
);

INSERT INTO website (name) VALUES ('My Website');
