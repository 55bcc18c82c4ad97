"""Chaos harness of the KSeF sending jobs: nothing is lost, nothing is sent twice.

Used by ``tests/test_reliability_chaos.py`` (a few dozen invoices, CI) and ``bench/chaos.py`` (1,000).

What a run does (:class:`ChaosRun`), against a committed database and a KSeF sandbox reached over HTTP:

* a Polish company with a fresh seller NIP (own KSeF context), a KSeF token and an offline certificate;
  ``count`` posted invoices (1-3 lines, 23 % / 8 %);
* **worker processes**: a *zygote* (this module run as a script) loads the Odoo registry once and forks
  workers on demand — like Odoo's prefork server — each looping over one job: ``send``
  (``_cron_ksef_send``), ``status`` (``_cron_ksef_update_status``), ``offline``
  (``_cron_ksef_send_offline``) or ``click`` (the "Send to KSeF" button on one invoice at a time);
* **kills**: at random moments a random worker gets SIGKILL and is restarted at once; *targeted* kills
  hold one KSeF request in the sandbox (``timeout_after_store`` / ``latency``) and SIGKILL the workers
  while KSeF has stored the invoice but Odoo has not heard back;
* **faults** (sandbox admin API), in episodes: timeouts after storing, 5xx before and after storing,
  429 storms, maintenance and failure windows (status service + API 503, or connections dropped),
  malformed answers, connection drops, latency, slow UPO;
* the invoices are queued in waves (list action, background), some through "Send to KSeF" clicks and
  some issued offline (during the windows: unavailability/failure, otherwise offline24);
* time is fast-forwarded for the waits that only pass with time (next attempt after a backoff or a
  Retry-After, abandonment of a never-completed batch session after 10 minutes); the grace period of
  "KSeF does not have it, send again" is 2 s;
* after the chaos phase (faults cleared, KSeF available) the workers — still killed now and then —
  finish the work; then :meth:`ChaosRun.verify` compares Odoo with the sandbox's own store
  (``GET /_sandbox/invoices``): per (seller NIP, invoice number) exactly one invoice in KSeF, every Odoo
  invoice accepted with the KSeF number and hash KSeF holds, and its UPO stored.

Exceptions escaping a job in a worker are recorded (``escaped``): expected remote failures must never
escape a cron (five failures deactivate it).
"""
import argparse
import collections
import json
import logging
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

_logger = logging.getLogger(__name__)

COMPANY_NAME = "KSeF chaos Sp. z o.o."
SEND_PATH = r'/sessions/online/[^/]+/invoices$'
JOBS = {
    'send': '_cron_ksef_send',
    'status': '_cron_ksef_update_status',
    'offline': '_cron_ksef_send_offline',
    'click': None,
}
PAUSES = {'send': 0.3, 'status': 0.4, 'offline': 1.0, 'click': 0.5}
CLICK_REF = 'chaos-click'
PARAMS = {
    # "KSeF provably does not have it" after 2 s instead of 5 minutes
    'l10n_pl_ksef.resolve_grace_seconds': '2',
    # short job runs: more hand-overs between workers
    'l10n_pl_ksef.cron_time_budget': '15',
    # sessions idle for 10 s are closed (closing races with sending)
    'l10n_pl_ksef.session_idle_seconds': '10',
}


# ------------------------------------------------------------------------------------------------
# fault episodes
# ------------------------------------------------------------------------------------------------

def _faults(*specs):
    return {'faults': list(specs)}


EPISODES = {
    'timeout_after_store': _faults(
        {'type': 'timeout_after_store', 'path': SEND_PATH, 'method': 'POST', 'seconds': 1.0, 'probability': 0.3},
        {'type': 'timeout_after_store', 'path': r'/sessions/(online|batch)(/[^/]+/close)?$', 'method': 'POST',
         'seconds': 1.0, 'probability': 0.3}),
    '5xx_before': _faults(*[{'type': 'error', 'status': s, 'when': 'before', 'probability': 0.06}
                            for s in (500, 502, 503, 504)]),
    '5xx_after': _faults(*[{'type': 'error', 'status': s, 'when': 'after', 'method': 'POST', 'probability': 0.2}
                           for s in (500, 502, 504)]),
    '429_storm': _faults({'type': 'rate_limit', 'retry_after': 1, 'probability': 0.6}),
    'malformed': _faults(*[{'type': 'malformed', 'mode': m, 'probability': 0.07}
                           for m in ('truncated_json', 'wrong_content_type', 'short_body')]),
    'drop': _faults({'type': 'drop', 'probability': 0.12}),
    'latency': _faults({'type': 'latency', 'seconds': 1.0, 'probability': 0.3}),
    'slow_upo': _faults({'type': 'slow_upo', 'seconds': 4.0}),
    'mixed': _faults(
        {'type': 'timeout_after_store', 'path': SEND_PATH, 'method': 'POST', 'seconds': 1.0, 'probability': 0.1},
        {'type': 'error', 'status': 502, 'when': 'after', 'method': 'POST', 'probability': 0.05},
        {'type': 'error', 'status': 500, 'when': 'before', 'probability': 0.03},
        {'type': 'error', 'status': 503, 'when': 'before', 'probability': 0.03},
        {'type': 'rate_limit', 'retry_after': 1, 'probability': 0.1},
        {'type': 'malformed', 'mode': 'truncated_json', 'probability': 0.03},
        {'type': 'drop', 'probability': 0.03},
        {'type': 'slow_upo', 'seconds': 2.0}),
    # KSeF windows: status service + the API's answer meanwhile
    'maintenance': {'status': 'MAINTENANCE', 'api': '503'},
    'failure_503': {'status': 'FAILURE', 'api': '503'},
    'failure_drop': {'status': 'FAILURE', 'api': 'drop'},
}
# targeted kills: (jobs to kill, fault holding the request KSeF is processing)
TARGETS = [
    (('send', 'click'), {'type': 'timeout_after_store', 'path': SEND_PATH, 'method': 'POST', 'seconds': 6.0}),
    (('send', 'click'), {'type': 'latency', 'path': SEND_PATH, 'method': 'POST', 'seconds': 6.0}),
    (('send',), {'type': 'timeout_after_store', 'path': r'/sessions/batch/[^/]+/close$', 'method': 'POST',
                 'seconds': 6.0}),
    (('send',), {'type': 'latency', 'path': r'^/storage/', 'method': 'PUT', 'seconds': 6.0}),
    (('send', 'click'), {'type': 'timeout_after_store', 'path': r'/sessions/online$', 'method': 'POST',
                         'seconds': 6.0}),
    (('status', 'click'), {'type': 'latency', 'path': r'/upo', 'seconds': 6.0}),
    (('status', 'click'), {'type': 'latency', 'path': r'/sessions/[^/]+/invoices', 'method': 'GET',
                           'seconds': 6.0}),
]


def fault_label(fault):
    kind = fault['type']
    if kind == 'error':
        return "HTTP %s %s storing" % (fault.get('status'), fault.get('when', 'before'))
    if kind == 'malformed':
        return "malformed answer (%s)" % fault.get('mode')
    if kind == 'rate_limit':
        return "429 rate limit"
    return kind.replace('_', ' ')


# ------------------------------------------------------------------------------------------------
# zygote + workers (separate OS processes)
# ------------------------------------------------------------------------------------------------

def odoo_cli_args(config):
    """Command-line options reproducing the database/addons part of an Odoo configuration."""
    args = ['--addons-path=%s' % config['addons_path']]
    for key, option in (('db_host', 'db_host'), ('db_port', 'db_port'), ('db_user', 'db_user'),
                        ('db_password', 'db_password'), ('data_dir', 'data-dir')):
        if config.get(key):
            args.append('--%s=%s' % (option, config[key]))
    return args


class Zygote:
    """A subprocess that loaded the registry once and forks worker processes on demand."""

    def __init__(self, db, odoo_args, workdir):
        self.workdir = workdir
        self.log_path = os.path.join(workdir, 'workers.log')
        self.escape_path = os.path.join(workdir, 'escaped.log')
        cmd = [sys.executable, os.path.abspath(__file__), 'zygote', '--db', db, '--log', self.log_path,
               '--escapes', self.escape_path, '--', *odoo_args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     start_new_session=True)
        self.exited = {}
        self.lock = threading.Lock()
        self.replies = collections.deque()
        self.ready = threading.Event()
        self.reply_event = threading.Condition(self.lock)
        self.reader = threading.Thread(target=self._read, name='chaos-zygote-reader', daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 120
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
        if not self.ready.is_set():
            self.stop()
            raise RuntimeError("the chaos zygote did not load the registry (log: %s)" % self.log_path)

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == 'READY':
                self.ready.set()
            elif parts[0] == 'SPAWNED':
                with self.lock:
                    self.replies.append(int(parts[1]))
                    self.reply_event.notify_all()
            elif parts[0] == 'EXITED':
                with self.lock:
                    self.exited[int(parts[1])] = int(parts[2])

    def spawn(self, job):
        with self.lock:
            self.proc.stdin.write('SPAWN %s\n' % job)
            self.proc.stdin.flush()
            if not self.reply_event.wait_for(lambda: self.replies, timeout=30):
                raise RuntimeError("the chaos zygote did not fork a %s worker" % job)
            return self.replies.popleft()

    def exit_status(self, pid):
        with self.lock:
            return self.exited.get(pid)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('QUIT\n')
                self.proc.stdin.flush()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


def zygote_main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('--db', required=True)
    parser.add_argument('--log', required=True)
    parser.add_argument('--escapes', required=True)
    parser.add_argument('odoo_args', nargs='*')
    args = parser.parse_args(argv)
    # this file's directory (tests/) must not shadow anything
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    import odoo
    from odoo.modules.registry import Registry

    odoo.tools.config.parse_config(args.odoo_args)
    handler = logging.FileHandler(args.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger('odoo.addons.l10n_pl_ksef').setLevel(logging.INFO)
    registry = Registry(args.db)
    # no connection may be shared with the forked workers
    odoo.sql_db.close_all()
    out = sys.stdout
    out.write('READY\n')
    out.flush()
    children = {}
    while True:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                break
            children.pop(pid, None)
            out.write('EXITED %d %d\n' % (pid, -os.WTERMSIG(status) if os.WIFSIGNALED(status)
                                           else os.WEXITSTATUS(status)))
            out.flush()
        readable, _w, _x = select.select([sys.stdin], [], [], 0.05)
        if not readable:
            continue
        line = sys.stdin.readline()
        if not line or line.startswith('QUIT'):
            break
        job = line.split()[1]
        out.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _worker(registry, job, args.escapes)
            finally:
                os._exit(0)
        children[pid] = job
        out.write('SPAWNED %d %s\n' % (pid, job))
        out.flush()
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            _logger.debug("chaos worker %s already gone", pid)


def _worker(registry, job, escape_path):
    """Body of a forked worker: run one job in a loop, forever (until killed)."""
    from odoo import SUPERUSER_ID, api

    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    random.seed()
    method = JOBS[job]
    while True:
        try:
            with registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                if method:
                    getattr(env['account.move'], method)()
                else:
                    _click(env)
        except Exception as exc:  # recorded: a job must never fail because KSeF misbehaves
            _logger.exception("chaos worker %s: exception escaped the job", job)
            with open(escape_path, 'a', encoding='utf-8') as fh:
                fh.write(json.dumps({'job': job, 'type': type(exc).__name__, 'message': str(exc)[:300]}) + '\n')
        time.sleep(PAUSES[job] * random.uniform(0.5, 1.5))


def _click(env):
    """A user clicks "Send to KSeF" on one invoice meant for clicks (``ref`` = chaos-click)."""
    from odoo.exceptions import UserError

    move = env['account.move'].search([('ref', '=', CLICK_REF), ('state', '=', 'posted'),
                                       ('ksef_state', '=', False)], limit=1, order='id')
    if not move:
        return
    try:
        move.with_company(move.company_id).action_ksef_send()
    except UserError as exc:
        # an error dialog for the user; a click on a queued invoice is harmless
        _logger.info("chaos click on %s: %s", move.id, exc.args[0][:200])


# ------------------------------------------------------------------------------------------------
# the run (driver side)
# ------------------------------------------------------------------------------------------------

class ChaosRun:
    """One chaos run. ``env_factory(cr)`` returns a superuser environment on a driver cursor;
    ``sandbox``: an object with ``url``, ``admin(method, path, payload)``, ``create_token(nip)``,
    ``set_status(status, message=None, api=None)``, ``clear_faults()`` and ``invoices(**filters)``
    (:class:`odoo.addons.l10n_pl_ksef.tests.common.SandboxAdmin`)."""

    def __init__(self, registry, env_factory, sandbox, odoo_args, *, count=40, chaos_seconds=20.0,
                 workers=None, kill_every=(2.0, 5.0), episodes=None, episode_seconds=(3.0, 6.0),
                 targeted_every=8.0, clock_step=2.0, offline_share=0.1, click_share=0.1, seed=None,
                 recovery_timeout=300.0, batch_threshold=15, wave_size=(1, 40), targets=None, verbose=False):
        self.registry = registry
        self.env_factory = env_factory
        self.sandbox = sandbox
        self.odoo_args = odoo_args
        self.count = count
        self.chaos_seconds = chaos_seconds
        self.workers = workers or {'send': 2, 'status': 1, 'offline': 1, 'click': 1}
        self.kill_every = kill_every
        self.episodes = list(episodes or EPISODES)
        self.episode_seconds = episode_seconds
        self.targeted_every = targeted_every
        self.clock_step = clock_step
        self.offline_share = offline_share
        self.click_share = click_share
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        self.recovery_timeout = recovery_timeout
        self.batch_threshold = batch_threshold
        self.wave_size = wave_size
        self.targets = targets or TARGETS
        self.verbose = verbose
        self.stats = collections.Counter()
        self.faults = collections.Counter()
        self.windows = collections.Counter()
        self.kills = collections.Counter()
        self.timeline = []
        self.slots = []
        self.zygote = None
        self.workdir = tempfile.mkdtemp(prefix='ksef-chaos-')
        self.saved_params = {}
        self.company_id = self.nip = None
        self.move_ids = []
        self.started = time.monotonic()

    def log(self, text, *args):
        line = "[%6.1f s] %s" % (time.monotonic() - self.started, text % args if args else text)
        self.timeline.append(line)
        if self.verbose:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    # ------------------------------------------------------------------ setup
    def setup(self):
        self.started = time.monotonic()
        from odoo import fields

        from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
        from odoo.addons.l10n_pl_ksef.tests.common import random_nip

        with self.registry.cursor() as cr:
            env = self.env_factory(cr)
            icp = env['ir.config_parameter'].sudo()
            for key, value in PARAMS.items():
                self.saved_params[key] = icp.get_param(key)
                icp.set_param(key, value)
            company = env['res.company'].search([('name', '=', COMPANY_NAME)], limit=1)
            if not company:
                company = env['res.company'].with_context(chart_template_load=True).create({
                    'name': COMPANY_NAME, 'country_id': env.ref('base.pl').id,
                    'currency_id': env.ref('base.PLN').id, 'street': "ul. Chaotyczna 1", 'zip': "00-950",
                    'city': "Warszawa"})
                env['account.chart.template'].try_loading('pl', company=company, install_demo=False)
            env = self.env_factory(cr, company)
            company = company.with_env(env)
            self.cleanup(env, company)
            self.nip = random_nip(self.rng)
            company.write({'vat': 'PL%s' % self.nip})
            company.sudo().write({
                'ksef_environment': 'sandbox', 'ksef_sandbox_url': self.sandbox.url,
                'ksef_context_nip': self.nip, 'ksef_auth_method': 'token',
                'ksef_token': self.sandbox.create_token(self.nip), 'ksef_batch_threshold': self.batch_threshold,
                'ksef_send_on_post': False})
            key, cert = ksef_crypto.generate_self_signed_certificate(
                nip=self.nip, organization=COMPANY_NAME, common_name=COMPANY_NAME, days=30, key_usage='offline')
            company.sudo()._ksef_store_certificate('offline', ksef_crypto.certificate_pem(cert),
                                                   ksef_crypto.private_key_pem(key))
            self.company_id = company.id
            pl = env.ref('base.pl').id
            buyers = env['res.partner'].with_context(no_vat_validation=True).create([{
                'name': "Odbiorca %s Sp. z o.o." % i, 'is_company': True, 'vat': 'PL%s' % random_nip(self.rng),
                'country_id': pl, 'street': "ul. Kupiecka %s" % i, 'zip': "30-001", 'city': "Kraków"}
                for i in range(1, 4)])
            taxes = [env['account.tax'].search([('company_id', '=', company.id), ('type_tax_use', '=', 'sale'),
                                                ('ksef_rate_code', '=', code), ('amount_type', '=', 'percent')],
                                               limit=1).id for code in ('23', '8')]
            today = fields.Date.context_today(company)
            cr.commit()  # pylint: disable=invalid-commit
        for start in range(0, self.count, 100):
            with self.registry.cursor() as cr:
                env = self.env_factory(cr, company)
                vals = []
                for i in range(start, min(self.count, start + 100)):
                    lines = [fields.Command.create({
                        'name': "Usługa %d/%d" % (i, n), 'quantity': self.rng.randint(1, 5),
                        'price_unit': self.rng.randint(100, 99999) / 100.0,
                        'tax_ids': [fields.Command.set([self.rng.choice(taxes)])]})
                        for n in range(self.rng.randint(1, 3))]
                    vals.append({'move_type': 'out_invoice', 'partner_id': self.rng.choice(buyers.ids),
                                 'invoice_date': today, 'company_id': self.company_id,
                                 'ref': CLICK_REF if self.rng.random() < self.click_share else False,
                                 'invoice_line_ids': lines})
                moves = env['account.move'].create(vals)
                moves.action_post()
                self.move_ids += moves.ids
                cr.commit()  # pylint: disable=invalid-commit
        self.log("setup: company %s, seller NIP %s, %d invoices created and posted", self.company_id, self.nip,
                 len(self.move_ids))

    def cleanup(self, env, company):
        """Leftovers of an earlier run in this database: nothing queued, no open session."""
        env.cr.execute("UPDATE account_move SET ksef_state = NULL WHERE company_id = %s "
                       "AND ksef_state IN ('to_send', 'sending', 'offline')", [company.id])
        env.cr.execute("UPDATE account_move SET ref = NULL WHERE company_id = %s AND ref = %s",
                       [company.id, CLICK_REF])
        env.cr.execute("UPDATE l10n_pl_ksef_session SET state = 'closed' WHERE company_id = %s AND state = 'open'",
                       [company.id])
        env.invalidate_all()

    def teardown(self):
        if self.zygote:
            self.zygote.stop()
            self.zygote = None
        try:
            self.sandbox.clear_faults()
            self.sandbox.set_status('AVAILABLE')
        except Exception:  # the sandbox may be gone already (bench interrupted)
            _logger.warning("chaos: sandbox not reset", exc_info=True)
        with self.registry.cursor() as cr:
            env = self.env_factory(cr)
            icp = env['ir.config_parameter'].sudo()
            for key, value in self.saved_params.items():
                icp.set_param(key, value or False)
            company = env['res.company'].browse(self.company_id).exists()
            if company:
                self.cleanup(self.env_factory(cr, company), company)
            cr.commit()  # pylint: disable=invalid-commit

    # ------------------------------------------------------------------ workers
    def start_workers(self):
        self.zygote = Zygote(self.registry.db_name, self.odoo_args, self.workdir)
        for job, number in self.workers.items():
            for _i in range(number):
                self.slots.append({'job': job, 'pid': self.zygote.spawn(job), 'killed': False})
        self.log("workers started: %s", ", ".join("%s x%d" % item for item in self.workers.items()))

    def supervise(self):
        """Restart dead workers; a worker that died without being killed is a finding."""
        for slot in self.slots:
            status = self.zygote.exit_status(slot['pid'])
            if status is None:
                continue
            if not slot['killed']:
                self.stats['worker_crashes'] += 1
                self.log("worker %s (%s) died by itself (status %s)", slot['pid'], slot['job'], status)
            slot['pid'] = self.zygote.spawn(slot['job'])
            slot['killed'] = False
            self.stats['restarts'] += 1

    def kill(self, slot, why):
        if slot['killed']:
            return False
        try:
            os.kill(slot['pid'], signal.SIGKILL)
        except ProcessLookupError:
            return False
        slot['killed'] = True
        self.kills[why] += 1
        self.stats['kills'] += 1
        self.stats['kills_%s' % slot['job']] += 1
        return True

    def wait_restarted(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while any(s['killed'] for s in self.slots) and time.monotonic() < deadline:
            self.supervise()
            time.sleep(0.05)

    # ------------------------------------------------------------------ Odoo-side actions of the driver
    def _env(self, cr):
        from odoo import api
        company = self.env_factory(cr)['res.company'].browse(self.company_id)
        env = self.env_factory(cr, company)
        return api.Environment(cr, env.uid, dict(env.context, ksef_commit=True))

    def queue_wave(self, offline_mode=None, size=None):
        """Queue the next wave (list action "Send to KSeF", background) or issue some invoices offline."""
        began = time.monotonic()
        with self.registry.cursor() as cr:
            env = self._env(cr)
            Move = env['account.move']
            size = size or self.rng.randint(*self.wave_size)
            moves = Move.search([('id', 'in', self.move_ids), ('ksef_state', '=', False),
                                 ('ref', '!=', CLICK_REF)], limit=size, order='id')
            if not moves:
                return 0
            if offline_mode:
                errors = moves._ksef_issue_offline(offline_mode)
                self.stats['issued_offline'] += len(moves) - len(errors)
                if errors:
                    self.stats['offline_errors'] += len(errors)
                    self.log("offline issue errors: %s", list(errors.values())[:2])
            else:
                moves._ksef_enqueue(background=True)
                self.stats['queued'] += len(moves)
            cr.commit()  # pylint: disable=invalid-commit
            self.log("wave: %d invoices %s (%.1f s)", len(moves), "issued offline (%s)" % offline_mode
                     if offline_mode else "queued", time.monotonic() - began)
            return len(moves)

    def fast_forward(self):
        """Time passes: next attempts after a backoff/Retry-After are due now, and a batch session that
        stayed open (its upload was killed) is old enough to be abandoned. Rows held by a worker are
        skipped (never wait for, nor deadlock with, a worker)."""
        with self.registry.cursor() as cr:
            cr.execute("""
                UPDATE account_move SET ksef_next_attempt = NULL
                 WHERE id IN (SELECT id FROM account_move
                               WHERE company_id = %s AND ksef_next_attempt IS NOT NULL
                                 AND ksef_next_attempt > (now() AT TIME ZONE 'UTC')
                                 FOR UPDATE SKIP LOCKED)""", [self.company_id])
            self.stats['fast_forwarded_attempts'] += cr.rowcount
            cr.execute("""
                UPDATE l10n_pl_ksef_session SET create_date = create_date - interval '1 hour'
                 WHERE id IN (SELECT id FROM l10n_pl_ksef_session
                               WHERE company_id = %s AND kind = 'batch' AND state = 'open'
                                 AND create_date < (now() AT TIME ZONE 'UTC') - interval '20 seconds'
                                 AND create_date > (now() AT TIME ZONE 'UTC') - interval '30 minutes'
                                 FOR UPDATE SKIP LOCKED)""", [self.company_id])
            self.stats['fast_forwarded_batches'] += cr.rowcount
            cr.commit()  # pylint: disable=invalid-commit

    def progress(self):
        with self.registry.cursor() as cr:
            cr.execute("""SELECT COALESCE(ksef_state, 'none'), (u.has_upo IS NOT NULL), count(*)
                            FROM account_move m
                            LEFT JOIN LATERAL (SELECT 1 AS has_upo FROM ir_attachment a
                                                WHERE a.res_model = 'account.move' AND a.res_id = m.id
                                                  AND a.res_field = 'ksef_upo_file' LIMIT 1) u ON true
                           WHERE m.id = ANY(%s) GROUP BY 1, 2""", [self.move_ids])
            return {(state, bool(upo)): n for state, upo, n in cr.fetchall()}

    def done(self, progress):
        final = sum(n for (state, upo), n in progress.items() if state in ('accepted', 'offline_accepted') and upo)
        return final == len(self.move_ids)

    # ------------------------------------------------------------------ faults
    def add_faults(self, faults):
        data = self.sandbox.admin('POST', '/faults', {'faults': faults, 'seed': self.rng.randrange(1 << 30)})
        return [f['id'] for f in data['faults']]

    def remove_faults(self, ids, targeted=False):
        """Count the hits of faults ``ids`` by type, then delete them; returns the number of hits."""
        hits = 0
        for fault in self.sandbox.admin('GET', '/faults')['faults']:
            if fault['id'] not in ids:
                continue
            label = fault_label(fault) + (" (then worker killed)" if targeted else "")
            if fault['type'] == 'slow_upo':
                self.faults[label + " window"] += 1
            elif fault.get('hits'):
                self.faults[label] += fault['hits']
                hits += fault['hits']
            self.sandbox.admin('DELETE', '/faults/%s' % fault['id'])
        return hits

    def start_episode(self, name):
        spec = EPISODES[name]
        if 'status' in spec:
            self.sandbox.set_status(spec['status'], "Chaos: %s" % name, api=spec['api'])
            self.windows["%s (API %s)" % (spec['status'], spec['api'])] += 1
            self.episode_ids = []
        else:
            self.episode_ids = self.add_faults(spec['faults'])
        self.log("episode %s", name)

    def end_episode(self, name):
        if 'status' in EPISODES[name]:
            self.sandbox.set_status('AVAILABLE')
        self.remove_faults(self.episode_ids)
        self.episode_ids = []

    def arm_target(self):
        """Hold one KSeF request in the sandbox (the workers that may make it are killed when it comes)."""
        jobs, fault = self.rng.choice(self.targets)
        ids = self.add_faults([dict(fault, count=1)])
        self.target = {'ids': ids, 'jobs': jobs, 'fault': fault, 'deadline': time.monotonic() + 8.0}

    def check_target(self):
        target = self.target
        current = {f['id']: f for f in self.sandbox.admin('GET', '/faults')['faults']}
        hit = any(current.get(i, {}).get('hits') for i in target['ids'])
        if hit:
            time.sleep(self.rng.uniform(0.05, 0.4))
            killed = sum(self.kill(slot, 'targeted') for slot in self.slots if slot['job'] in target['jobs'])
            self.stats['targeted_kills'] += 1
            self.log("targeted kill: %s %s held by the sandbox -> %d %s workers killed", target['fault']['type'],
                     target['fault']['path'], killed, "/".join(target['jobs']))
        elif time.monotonic() < target['deadline']:
            return
        else:
            self.stats['targeted_missed'] += 1
        self.remove_faults(target['ids'], targeted=True)
        self.target = None

    # ------------------------------------------------------------------ main loop
    def run(self):
        self.setup()
        try:
            self.start_workers()
            self.chaos_phase()
            self.recovery_phase()
        finally:
            if self.zygote:
                self.zygote.stop()
                self.zygote = None
        return self.verify()

    def chaos_phase(self):
        started = time.monotonic()
        end = started + self.chaos_seconds
        queue_end = started + self.chaos_seconds * 0.6
        episodes = []
        episode = None
        episode_end = 0.0
        self.target = None
        self.episode_ids = []
        next_kill = started + self.rng.uniform(*self.kill_every)
        next_targeted = started + 1.0
        next_clock = started + self.clock_step
        next_wave = started
        waves = []
        left = int(self.count * (1 - self.click_share))
        while left > 0:
            waves.append(min(left, self.rng.randint(*self.wave_size)))
            left -= waves[-1]
        wave_interval = max(0.1, (queue_end - started) / max(1, len(waves)))
        while True:
            now = time.monotonic()
            if now >= end and episode is None and self.target is None:
                break
            self.supervise()
            if episode and now >= episode_end:
                self.end_episode(episode)
                episode = None
                episode_end = now + self.rng.uniform(0.3, 1.0)     # a quiet moment
            if episode is None and now >= episode_end and now < end:
                if not episodes:
                    episodes = self.rng.sample(self.episodes, len(self.episodes))
                episode = episodes.pop()
                self.start_episode(episode)
                episode_end = now + self.rng.uniform(*self.episode_seconds)
            if now >= next_wave and waves:
                size = waves.pop()
                window = EPISODES.get(episode or '', {}).get('status')
                if window:
                    self.queue_wave('failure' if window == 'FAILURE' else 'unavailability', max(1, size // 3))
                elif self.rng.random() < self.offline_share:
                    self.queue_wave('offline24', max(1, size // 3))
                else:
                    self.queue_wave(size=size)
                next_wave = now + wave_interval * self.rng.uniform(0.7, 1.3)
            if now >= next_kill:
                slot = self.rng.choice(self.slots)
                if self.kill(slot, 'random'):
                    self.log("random kill: %s worker %s", slot['job'], slot['pid'])
                next_kill = now + self.rng.uniform(*self.kill_every)
            if self.target:
                self.check_target()
                if not self.target:
                    next_targeted = time.monotonic() + self.targeted_every * self.rng.uniform(0.5, 1.5)
            elif now >= next_targeted and now < end:
                self.arm_target()
            if now >= next_clock:
                self.fast_forward()
                next_clock = now + self.clock_step
            time.sleep(0.05)
        self.sandbox.set_status('AVAILABLE')
        self.sandbox.clear_faults()
        self.stats['chaos_seconds'] = round(time.monotonic() - started, 1)
        self.log("chaos phase over: %s", dict(self.stats))

    def recovery_phase(self):
        """Queue whatever is left, let the workers finish (still killed now and then)."""
        started = time.monotonic()
        while self.queue_wave():
            pass
        deadline = started + self.recovery_timeout
        next_kill = started + self.rng.uniform(*self.kill_every) * 2
        last_log = 0.0
        while time.monotonic() < deadline:
            self.supervise()
            progress = self.progress()
            if self.done(progress):
                break
            now = time.monotonic()
            if now >= next_kill:
                slot = self.rng.choice(self.slots)
                if self.kill(slot, 'random'):
                    self.log("random kill (recovery): %s worker %s", slot['job'], slot['pid'])
                next_kill = now + self.rng.uniform(*self.kill_every) * 2
            if now - last_log > 10:
                self.log("recovery: %s", {"%s%s" % (s, "+UPO" if u else ""): n for (s, u), n in
                                          sorted(progress.items())})
                last_log = now
            self.fast_forward()
            time.sleep(0.5)
        self.stats['recovery_seconds'] = round(time.monotonic() - started, 1)

    # ------------------------------------------------------------------ proof
    def verify(self):
        stored = self.sandbox.invoices(seller_nip=self.nip)
        by_number = collections.defaultdict(list)
        for item in stored:
            by_number[item['invoiceNumber']].append(item)
        result = {
            'invoices': len(self.move_ids), 'stored_in_ksef': len(stored),
            'duplicates_in_ksef': sum(len(v) - 1 for v in by_number.values() if len(v) > 1),
            'accepted': 0, 'lost': 0, 'missing_upo': 0, 'mismatched': 0, 'states': collections.Counter(),
            'problems': [],
        }
        with self.registry.cursor() as cr:
            env = self._env(cr)
            moves = env['account.move'].browse(self.move_ids)
            for move in moves:
                result['states'][move.ksef_state or 'none'] += 1
                found = by_number.get(move.name, [])
                if move.ksef_state not in ('accepted', 'offline_accepted') or not found:
                    result['lost'] += 1
                    result['problems'].append("%s: %s in Odoo (%s), %d in KSeF" % (
                        move.name, move.ksef_state, (move.ksef_message or '')[:160], len(found)))
                    continue
                if (move.ksef_number, move.ksef_xml_hash) != (found[0]['ksefNumber'], found[0]['invoiceHash']):
                    result['mismatched'] += 1
                    result['problems'].append("%s: Odoo %s/%s, KSeF %s/%s" % (
                        move.name, move.ksef_number, move.ksef_xml_hash, found[0]['ksefNumber'],
                        found[0]['invoiceHash']))
                    continue
                upo = move.ksef_upo_id.raw if move.ksef_upo_id else b''
                if not upo or move.ksef_number.encode() not in upo:
                    result['missing_upo'] += 1
                    result['problems'].append("%s: accepted (%s) without its UPO" % (move.name, move.ksef_number))
                    continue
                result['accepted'] += 1
            foreign = set(by_number) - set(moves.mapped('name'))
            if foreign:
                result['problems'].append("in KSeF but not among the run's invoices: %s" % sorted(foreign)[:5])
        escaped = []
        if os.path.exists(os.path.join(self.workdir, 'escaped.log')):
            with open(os.path.join(self.workdir, 'escaped.log'), encoding='utf-8') as fh:
                escaped = [json.loads(line) for line in fh if line.strip()]
        result.update({
            'escaped': len(escaped), 'escaped_samples': escaped[:5], 'kills': self.stats['kills'],
            'kills_by_kind': {k: v for k, v in self.kills.items() if v},
            'kills_by_job': {k[6:]: v for k, v in self.stats.items() if k.startswith('kills_') and v},
            'faults': dict(self.faults), 'windows': dict(self.windows), 'stats': dict(self.stats),
            'worker_log': self.zygote.log_path if self.zygote else os.path.join(self.workdir, 'workers.log'),
            'seed': self.seed, 'wall_seconds': round(time.monotonic() - self.started, 1),
        })
        result['states'] = dict(result['states'])
        return result


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == 'zygote':
        zygote_main(sys.argv[2:])
    else:
        sys.exit("usage: ksef_chaos.py zygote --db DB --log FILE --escapes FILE -- ODOO_OPTIONS...")
