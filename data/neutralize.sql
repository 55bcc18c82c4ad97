-- l10n_pl_ksef: a neutralized copy of a database never talks to the production KSeF and keeps none of
-- its secrets (KSeF token, stored access/refresh tokens, KSeF certificates and their private keys).
UPDATE res_company
   SET ksef_environment = 'test',
       ksef_token = NULL,
       ksef_auth_certificate_id = NULL,
       ksef_offline_certificate_id = NULL,
       ksef_auth_state = 'not_configured',
       ksef_auth_message = NULL,
       ksef_permissions = NULL
 WHERE ksef_environment = 'prod'
    OR ksef_token IS NOT NULL
    OR ksef_auth_certificate_id IS NOT NULL
    OR ksef_offline_certificate_id IS NOT NULL
    OR ksef_auth_state != 'not_configured';

DELETE FROM l10n_pl_ksef_auth_token;

DELETE FROM ir_attachment
 WHERE (res_model = 'certificate.key' AND res_field IN ('content', 'pem_key') AND res_id IN (
            SELECT private_key_id FROM certificate_certificate
             WHERE scope IN ('ksef_auth', 'ksef_offline') AND private_key_id IS NOT NULL))
    OR (res_model = 'certificate.certificate' AND res_field IN ('content', 'pem_certificate') AND res_id IN (
            SELECT id FROM certificate_certificate WHERE scope IN ('ksef_auth', 'ksef_offline')));

UPDATE certificate_key
   SET active = FALSE
 WHERE id IN (SELECT private_key_id FROM certificate_certificate WHERE scope IN ('ksef_auth', 'ksef_offline'));

UPDATE certificate_certificate
   SET active = FALSE
 WHERE scope IN ('ksef_auth', 'ksef_offline');
