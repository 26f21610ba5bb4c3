<?php
/*
 * SMS/Text message configure, as the product document describes it: the Phone number field and
 * Save; "The phone number is not verified"; the Send verification code button, replaced by a
 * blank field and Verify once the code is sent; "The phone number is verified".
 */
$s = $v['status'];
?>
<form method="post" action="<?= $h->e($v['url']('sms')) ?>" autocomplete="off">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="save">
<label for="phone"><?= $s['phoneVerified'] ? 'New phone number' : 'Phone number' ?></label>
<input type="tel" id="phone" name="phone" required placeholder="+1 555 123 4567"
       value="" autocomplete="tel">
<button type="submit" id="save">Save</button>
<?php if ($s['phone'] !== '') : ?>
<p class="note">Saved number: <strong id="saved-phone"><?= $h->e($s['phone']) ?></strong></p>
<?php endif; ?>
<?php if ($s['phoneVerified']) : ?>
<p class="note">To change the number you will be asked for a code texted to your current number, or a code
from your authenticator app, or a backup code if you lost the phone.</p>
<?php endif; ?>
</form>

<?php if ($s['phoneVerified']) : ?>
<p class="message verified" id="verified">The phone number is verified</p>
<?php endif; ?>

<?php if ($v['unverified']) : ?>
    <?php if ($s['pendingPhone'] !== '') : ?>
<p class="message not-verified" id="not-verified">The new phone number <?= $h->e($s['pendingPhone']) ?> is not verified.
Your current number keeps working until it is.</p>
    <?php else : ?>
<p class="message not-verified" id="not-verified">The phone number is not verified</p>
    <?php endif; ?>
<form method="post" action="<?= $h->e($v['url']('sms')) ?>" autocomplete="off">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
    <?php if ($v['codeSent']) : ?>
<input type="hidden" name="action" value="verify">
<label for="code">Code texted to <?= $h->e($v['destination']) ?></label>
<input type="text" id="code" name="code" required autofocus inputmode="numeric" autocomplete="one-time-code">
<button type="submit" id="verify">Verify</button>
    <?php else : ?>
<input type="hidden" name="action" value="send">
<button type="submit" id="send-code">Send verification code</button>
    <?php endif; ?>
</form>
    <?php if ($v['codeSent']) : ?>
<form method="post" action="<?= $h->e($v['url']('sms')) ?>">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<input type="hidden" name="action" value="send">
        <?php if ($v['resendWait'] !== '') : ?>
<button type="submit" id="resend" disabled>Send again</button>
<span class="note">You can ask for a new code <?= $h->e($v['resendWait']) ?> (reload the page then).</span>
        <?php else : ?>
<button type="submit" id="resend">Send again</button>
        <?php endif; ?>
</form>
    <?php endif; ?>
<?php endif; ?>
<?php if (!$v['pending']) : ?>
<p class="note"><a href="<?= $h->e($v['url']('profile')) ?>">Back to your profile</a></p>
<?php endif; ?>
