<?php /* First login: choose the method (the product: "select SMS/text messages as your preferred method"). */ ?>
<p>Your account needs a second step at sign-in. Choose how you want to confirm it is you:</p>
<form method="post" action="<?= $h->e($v['url']('choose')) ?>">
<input type="hidden" name="_csrf" value="<?= $h->e($v['csrf']) ?>">
<label><input type="radio" name="method" value="sms" id="method-sms" checked> SMS/text messages</label>
<p class="note">A one-time password is texted to your phone each time you sign in.</p>
<label><input type="radio" name="method" value="totp" id="method-totp"> Authenticator app</label>
<p class="note">An app such as Google Authenticator shows a new code every 30 seconds.</p>
<button type="submit" id="choose">Continue</button>
</form>
