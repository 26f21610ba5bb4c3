<?php
/*
 * The step-up: before a change of factors, a code from a current factor. A texted code, an
 * authenticator code (interchangeable, as the product says), or a backup code where allowed.
 */
?>
<p>To <?= $h->e($v['what']) ?>, confirm it is you with one of these:</p>
<?php if ($v['sms']) : ?>
<h2>A code texted to your phone <?= $h->e($v['phone']) ?></h2>
    <?php if ($v['codeSent']) : ?>
<form method="post" action="<?= $h->e($v['url']('confirm')) ?>" autocomplete="off">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="prove">
<input type="hidden" name="kind" value="sms">
<label for="sms-code">Code texted to <?= $h->e($v['destination']) ?></label>
<input type="text" id="sms-code" name="code" required inputmode="numeric" autocomplete="one-time-code">
<button type="submit" id="confirm-sms">Confirm</button>
</form>
    <?php endif; ?>
<form method="post" action="<?= $h->e($v['url']('confirm')) ?>">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="send">
    <?php if ($v['resendWait'] !== '') : ?>
<button type="submit" id="send-sms" disabled>Send again</button>
<span class="note">You can ask for a new code <?= $h->e($v['resendWait']) ?> (reload the page then).</span>
    <?php else : ?>
<button type="submit" id="send-sms"><?= $v['codeSent'] ? 'Send again' : 'Text me a code' ?></button>
    <?php endif; ?>
</form>
<?php endif; ?>
<?php if ($v['totp']) : ?>
<h2>A code from your authenticator app</h2>
<form method="post" action="<?= $h->e($v['url']('confirm')) ?>" autocomplete="off">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="prove">
<input type="hidden" name="kind" value="totp">
<label for="totp-code">Authenticator code</label>
<input type="text" id="totp-code" name="code" required inputmode="numeric" autocomplete="one-time-code">
<button type="submit" id="confirm-totp">Confirm</button>
</form>
<?php endif; ?>
<?php if ($v['backup']) : ?>
<h2>A backup code, if you lost your phone</h2>
<form method="post" action="<?= $h->e($v['url']('confirm')) ?>" autocomplete="off">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="prove">
<input type="hidden" name="kind" value="backup">
<label for="backup-code">Backup code (it is used up)</label>
<input type="text" id="backup-code" name="code" required>
<button type="submit" id="confirm-backup">Confirm</button>
</form>
<?php endif; ?>
<form method="post" action="<?= $h->e($v['url']('confirm')) ?>">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="cancel">
<button type="submit" class="link" id="cancel">Cancel</button>
</form>
