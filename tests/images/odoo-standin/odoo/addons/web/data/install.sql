-- The red "neutralized database" banner: shipped inactive, activated by neutralization.
WITH view AS (
    INSERT INTO ir_ui_view (name, key, type, arch_db, mode, active)
    VALUES ('Neutralize banner', 'web.neutralize_banner', 'qweb',
            '{"en_US": "<t t-name=\"web.neutralize_banner\"><span id=\"oe_neutralize_banner\">This database is neutralized.</span></t>"}',
            'primary', false)
    RETURNING id
)
INSERT INTO ir_model_data (module, name, model, res_id)
SELECT 'web', 'neutralize_banner', 'ir.ui.view', id FROM view;
