# The official Odoo 18.0 image plus the one Python library l10n_pl_ksef needs that the image does not
# ship (xmlschema). Everything else the addon uses (lxml, cryptography, requests, qrcode, Pillow) comes
# with Odoo. Used by docker-compose.yml for both Odoo and the local KSeF sandbox.
#
# The image is Ubuntu 24.04 with Debian-packaged Python libraries, so pip refuses to touch the system
# Python (PEP 668) unless told to; xmlschema (and its only dependency, elementpath) do not replace any
# packaged library.
FROM odoo:18.0

USER root
RUN pip3 install --no-cache-dir --break-system-packages "xmlschema>=3.0,<5" \
    && mkdir -p /var/lib/ksef-sandbox \
    && chown odoo:odoo /var/lib/ksef-sandbox
USER odoo
