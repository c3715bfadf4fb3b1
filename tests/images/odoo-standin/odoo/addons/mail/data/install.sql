CREATE TABLE mail_template (
    id serial PRIMARY KEY,
    name jsonb,
    model varchar,
    subject jsonb,
    mail_server_id integer REFERENCES ir_mail_server ON DELETE SET NULL
);

CREATE TABLE fetchmail_server (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    server varchar,
    port integer,
    server_type varchar DEFAULT 'imap',
    state varchar DEFAULT 'draft',
    "user" varchar,
    password varchar,
    active boolean DEFAULT true
);

INSERT INTO mail_template (name, model, subject) VALUES
    ('{"en_US": "Settings: New User Invite"}', 'res.users', '{"en_US": "Welcome to Odoo"}');

WITH action AS (
    INSERT INTO ir_act_server (name, state, usage, model_name, code)
    VALUES ('{"en_US": "Mail: Email Queue Manager"}', 'code', 'ir_cron', 'mail.mail',
            'model.process_email_queue()')
    RETURNING id
), cron AS (
    INSERT INTO ir_cron (ir_actions_server_id, cron_name, user_id, interval_number, interval_type)
    SELECT id, 'Mail: Email Queue Manager', 1, 1, 'hours' FROM action
    RETURNING id
)
INSERT INTO ir_model_data (module, name, model, res_id, noupdate)
SELECT 'mail', 'ir_cron_mail_scheduler_action', 'ir.cron', id, true FROM cron;
