import { Component, onWillStart, onWillUnmount, useState } from "@odoo/owl";
import { Dropdown } from "@web/core/dropdown/dropdown";
import { useDropdownState } from "@web/core/dropdown/dropdown_hooks";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { user } from "@web/core/user";
import { useService } from "@web/core/utils/hooks";

/**
 * KSeF authorization status of the current company in the top bar: a green (authorized), red (error)
 * or grey (not configured) dot with "KSeF". Visible to KSeF users; KSeF managers can re-authorize
 * from the dropdown. Kept up to date through the bus (``l10n_pl_ksef.auth_state``).
 */
export class KsefSystray extends Component {
    static template = "l10n_pl_ksef.KsefSystray";
    static props = {};
    static components = { Dropdown };

    setup() {
        this.orm = useService("orm");
        this.action = useService("action");
        this.notification = useService("notification");
        this.company = useService("company");
        this.dropdown = useDropdownState();
        this.state = useState({ data: { visible: false }, busy: false });
        this.onBusNotification = this.onBusNotification.bind(this);
        this.bus = this.env.services.bus_service;
        onWillStart(async () => {
            this.isViewer = await user.hasGroup("l10n_pl_ksef.group_ksef_viewer");
            if (!this.isViewer) {
                return;
            }
            // do not delay the web client: load the status in the background
            this.load();
            if (this.bus) {
                this.bus.subscribe("l10n_pl_ksef.auth_state", this.onBusNotification);
            }
        });
        onWillUnmount(() => {
            if (this.isViewer && this.bus) {
                this.bus.unsubscribe("l10n_pl_ksef.auth_state", this.onBusNotification);
            }
        });
    }

    get data() {
        return this.state.data;
    }

    get dotClass() {
        return {
            authorized: "text-success",
            error: "text-danger",
        }[this.data.state] || "text-muted";
    }

    get title() {
        return _t("KSeF authorization: %s", this.data.state_label || "");
    }

    async load() {
        this.state.data = await this.orm.call("res.company", "ksef_systray_data", []);
    }

    onBusNotification(payload) {
        if (payload && payload.company_id === this.company.currentCompany.id) {
            this.load();
        }
    }

    async authorize() {
        this.state.busy = true;
        try {
            this.state.data = await this.orm.call("res.company", "ksef_systray_authorize", []);
        } finally {
            this.state.busy = false;
        }
        if (this.data.state === "authorized") {
            this.notification.add(_t("Authorized in KSeF."), { type: "success" });
        } else {
            this.notification.add(this.data.message || _t("KSeF authorization failed."), {
                title: _t("KSeF"),
                type: "danger",
            });
        }
    }

    async openSettings() {
        this.dropdown.close();
        await this.action.doAction("account.action_account_config");
    }
}

export const ksefSystrayItem = { Component: KsefSystray };

registry.category("systray").add("l10n_pl_ksef.KsefSystray", ksefSystrayItem, { sequence: 25 });
