import { Component, onWillStart, useState } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { formatDateTime, deserializeDateTime } from "@web/core/l10n/dates";
import { listView } from "@web/views/list/list_view";
import { ListController } from "@web/views/list/list_controller";

const { DateTime } = luxon;

/**
 * Banner above the KSeF inbox list: says that invoices arrive in cycles (KSeF limits downloads),
 * when the last download ran and the next one will, any download error, and a "Fetch now" button.
 */
export class KsefInboxBanner extends Component {
    static template = "l10n_pl_ksef.KsefInboxBanner";
    static props = {};

    setup() {
        this.orm = useService("orm");
        this.action = useService("action");
        this.state = useState({ data: null, busy: false });
        onWillStart(() => this.load());
    }

    async load() {
        this.state.data = await this.orm.call("l10n_pl_ksef.inbox_sync", "ksef_banner_data", []);
    }

    formatDate(value) {
        return value ? formatDateTime(deserializeDateTime(value)) : _t("never");
    }

    isPast(value) {
        return Boolean(value) && deserializeDateTime(value) < DateTime.now();
    }

    async fetchNow() {
        this.state.busy = true;
        try {
            const action = await this.orm.call("l10n_pl_ksef.inbox_sync", "action_ksef_fetch_now", []);
            await this.action.doAction(action);
            await this.load();
        } finally {
            this.state.busy = false;
        }
    }
}

export class KsefInboxListController extends ListController {
    static template = "l10n_pl_ksef.KsefInboxListView";
    static components = { ...ListController.components, KsefInboxBanner };
}

export const ksefInboxListView = {
    ...listView,
    Controller: KsefInboxListController,
};

registry.category("views").add("ksef_inbox_list", ksefInboxListView);
