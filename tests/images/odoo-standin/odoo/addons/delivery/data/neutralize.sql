-- disable delivery carriers from external providers
UPDATE delivery_carrier
   SET prod_environment = false,
       active = false
 WHERE delivery_type NOT IN ('fixed', 'base_on_rule');
